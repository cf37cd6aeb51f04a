"""The browser app (Gradio): a thin client of the rag library."""
