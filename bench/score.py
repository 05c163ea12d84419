"""The judge's command moved to ``python -m judge.score``; this name still runs it."""

from judge.score import app

if __name__ == "__main__":
    app()
