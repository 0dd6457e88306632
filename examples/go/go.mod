module pushexamples

go 1.18
