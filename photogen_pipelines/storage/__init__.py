"""Where artifacts live (a local folder or S3) and the typed documents the stages hand each other."""
