from spaceai.cli import main

main()
