from docpipe.cli import main

main()
