"""Synthetic traffic: topic-coherent prompts and answers with realistic metadata."""

from engine.synth._topics import TOPICS, Topic
from engine.synth._traffic import TRAFFIC_MIX, PromptKey, answer, generate, prompt_index

__all__ = ["TOPICS", "TRAFFIC_MIX", "PromptKey", "Topic", "answer", "generate", "prompt_index"]
