from interplay.cli import main

main()
