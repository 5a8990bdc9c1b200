from colorsr_cli.cli import main

main()
