from kdeconv.cli import main

main()
