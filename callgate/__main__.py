from callgate.cli import main

main(prog_name="callgate")
