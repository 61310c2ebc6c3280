from canaryflow.cli import app

app(prog_name="canaryflow")
