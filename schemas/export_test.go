package schemas

// CompileDocument compiles a schema document that is not one of the embedded
// files (for tests of the validator's keyword checks).
func CompileDocument(b []byte) error {
	doc, err := decodeJSON(b)
	if err != nil {
		return err
	}
	c := newCompiler()
	c.docs["test.json"] = doc
	_, err = c.compile("test.json", "")
	return err
}

// Pointer is the JSON pointer of an instance location, as Validate reports it.
var Pointer = pointer
