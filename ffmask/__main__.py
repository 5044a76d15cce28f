from ffmask.cli import main

main()
