from ohlcv_cli.cli import main

main()
