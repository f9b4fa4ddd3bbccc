from ananke.cli import app

app()
