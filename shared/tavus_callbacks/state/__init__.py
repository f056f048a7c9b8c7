"""The conversation state: its fold, pending derived work and its repair."""
