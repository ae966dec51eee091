package main

func runServe(args []string, io stdio) int {
	_ = args
	_, _ = io.err.Write([]byte("hookbridge serve: not implemented yet\n"))
	return 1
}
