from longrope.cli import main

raise SystemExit(main())
