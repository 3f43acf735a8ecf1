from hatinspect.cli.entry import main

main()
