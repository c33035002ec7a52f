from shared.runner import main

raise SystemExit(main(["linkbroker"]))
