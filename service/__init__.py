"""The faces of rehearsal: the CLI, and the shared service layer every face calls."""
