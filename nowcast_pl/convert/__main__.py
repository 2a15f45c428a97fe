from nowcast_pl.convert.cli import main

main()
