from reasonry.cli import main

main()
