from vlmq.cli import main

main()
