from hatinspect.cli.app import main

main()
