module pushexamples

go 1.19
