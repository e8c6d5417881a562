from docpipe.client.cli import main

main()
