from nowcast_pl.report.cli import main

raise SystemExit(main())
