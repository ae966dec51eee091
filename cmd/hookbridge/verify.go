package main

func runVerify(args []string, io stdio) int {
	_ = args
	_, _ = io.err.Write([]byte("hookbridge verify: not implemented yet\n"))
	return 1
}
