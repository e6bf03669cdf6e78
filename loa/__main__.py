from loa.cli import main

if __name__ == "__main__":  # the loudness process is spawned: it must not run the CLI again
    raise SystemExit(main())
