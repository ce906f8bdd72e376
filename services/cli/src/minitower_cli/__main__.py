from minitower_cli.main import main

main()
