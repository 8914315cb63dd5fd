"""The frozen encoders a model is built on: where one is found (the bundled MiniLM, a local
directory, a hub name), how it is loaded, and how two encoders are told apart."""
