from lit_gen.cli import main

main()
