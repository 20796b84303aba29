"""The Gradio chat: the app (`app`), HTML rendering of answers and sources (`render`), its CSS."""
