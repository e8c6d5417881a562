from docpipe.cli import app

app(prog_name="docpipe")
