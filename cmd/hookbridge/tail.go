package main

func runTail(args []string, io stdio) int {
	_ = args
	_, _ = io.err.Write([]byte("hookbridge tail: not implemented yet\n"))
	return 1
}
