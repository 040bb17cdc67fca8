from swtpm_extcap.cli import main; raise SystemExit(main())  # noqa: E702
