package main

func runSend(args []string, io stdio) int {
	_ = args
	_, _ = io.err.Write([]byte("hookbridge send: not implemented yet\n"))
	return 1
}
