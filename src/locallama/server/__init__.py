"""The HTTP server: the Ollama API and the OpenAI API over one Runtime."""
