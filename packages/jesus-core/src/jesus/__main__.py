from jesus.cli.main import main

raise SystemExit(main())
