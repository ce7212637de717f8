from locallama.cli import main

main()
