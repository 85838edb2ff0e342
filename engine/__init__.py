"""rehearsal's batch engine: pure logic over Polars, numpy and (later) Ray; knows nothing of HTTP or Prefect."""
