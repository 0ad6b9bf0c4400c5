from kling_tui.cli import main

raise SystemExit(main())
