from lenshpc.cli import main

raise SystemExit(main())
