from fuxitranyu.cli import main

main()
