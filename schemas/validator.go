package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The validator below implements the part of JSON Schema 2020-12 that Ferry's
// schemas use, and refuses to compile a schema that uses anything else.
//
// Why not a general validator at run time: santhosh-tekuri/jsonschema/v6
// compiles the meta-schemas of five drafts when its package initialises —
// 1.7 MB of heap and 21,000 allocations in every process that links it,
// whether or not it validates anything — and a media host has a memory budget.
// jsonschema/v6 stays the reference: the tests compile every schema with it
// and check that both validators agree on every example and on mutations of
// them (TestValidatorAgreesWithReference).

// keywords is every keyword a schema may use. Annotations are ignored;
// anything not listed fails compilation, so a schema cannot silently use a
// keyword this validator would not enforce.
var keywords = map[string]bool{
	"$schema": true, "$id": true, "$defs": true, "$ref": true, "title": true, "description": true,
	"type": true, "const": true, "enum": true,
	"properties": true, "required": true, "additionalProperties": true, "unevaluatedProperties": true, "propertyNames": true,
	"items": true, "minItems": true, "uniqueItems": true, "allOf": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true,
}

// node is one compiled schema.
type node struct {
	never bool // the false schema

	ref   *node
	allOf []*node

	types    []string
	hasConst bool
	constVal any
	enum     []any

	properties    map[string]*node
	required      []string
	additional    *node // additionalProperties
	unevaluated   *node // unevaluatedProperties
	propertyNames *node

	items       *node
	minItems    *int
	uniqueItems bool

	minLength, maxLength *int
	pattern              *regexp.Regexp
	format               string

	minimum, maximum, exclusiveMinimum *big.Rat
}

// compiler turns the embedded schema documents into nodes, following $ref
// across files and into $defs.
type compiler struct {
	docs  map[string]any   // file -> parsed document
	nodes map[string]*node // "file#pointer" -> node (also breaks $ref cycles)
}

func newCompiler() *compiler {
	return &compiler{docs: map[string]any{}, nodes: map[string]*node{}}
}

func (c *compiler) doc(file string) (any, error) {
	if d, ok := c.docs[file]; ok {
		return d, nil
	}
	b, err := files.ReadFile(file)
	if err != nil {
		return nil, err
	}
	d, err := decodeJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.docs[file] = d
	return d, nil
}

// compile compiles the schema at the JSON pointer ptr ("" or "/$defs/name")
// of file.
func (c *compiler) compile(file, ptr string) (*node, error) {
	key := file + "#" + ptr
	if n, ok := c.nodes[key]; ok {
		return n, nil
	}
	d, err := c.doc(file)
	if err != nil {
		return nil, err
	}
	v, err := lookup(d, ptr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	n, err := c.sub(file, ptr, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return n, nil
}

// sub compiles the schema v found at ptr in file.
func (c *compiler) sub(file, ptr string, v any) (*node, error) {
	key := file + "#" + ptr
	if n, ok := c.nodes[key]; ok {
		return n, nil
	}
	n := &node{}
	c.nodes[key] = n
	if err := c.fill(n, v, file, ptr); err != nil {
		return nil, err
	}
	return n, nil
}

func (c *compiler) fill(n *node, v any, file, ptr string) error {
	switch s := v.(type) {
	case bool:
		n.never = !s
		return nil
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(s)) {
			if !keywords[k] {
				return fmt.Errorf("keyword %q at %s is not supported by this validator", k, ptr)
			}
			if err := c.keyword(n, k, s[k], file, ptr); err != nil {
				return fmt.Errorf("%s/%s: %w", ptr, k, err)
			}
		}
		return nil
	default:
		return fmt.Errorf("schema at %q is %T, not an object or boolean", ptr, v)
	}
}

func (c *compiler) keyword(n *node, k string, v any, file, ptr string) error {
	var err error
	at := ptr + "/" + k
	switch k {
	case "$schema", "$id", "$defs", "title", "description":
	case "$ref":
		ref, ok := v.(string)
		if !ok {
			return fmt.Errorf("not a string")
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			target = path.Join(path.Dir(file), target)
		} else {
			target = file
		}
		n.ref, err = c.compile(target, frag)
	case "allOf":
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		for i, s := range list {
			sn, err := c.sub(file, fmt.Sprintf("%s/%d", at, i), s)
			if err != nil {
				return err
			}
			n.allOf = append(n.allOf, sn)
		}
	case "type":
		switch t := v.(type) {
		case string:
			n.types = []string{t}
		case []any:
			for _, x := range t {
				s, ok := x.(string)
				if !ok {
					return fmt.Errorf("not a type name")
				}
				n.types = append(n.types, s)
			}
		default:
			return fmt.Errorf("not a string or array")
		}
	case "const":
		n.hasConst, n.constVal = true, v
	case "enum":
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		n.enum = list
	case "properties":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("not an object")
		}
		n.properties = map[string]*node{}
		for name, s := range m {
			if n.properties[name], err = c.sub(file, at+"/"+name, s); err != nil {
				return err
			}
		}
	case "required":
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("not a property name")
			}
			n.required = append(n.required, s)
		}
	case "additionalProperties":
		n.additional, err = c.sub(file, at, v)
	case "unevaluatedProperties":
		n.unevaluated, err = c.sub(file, at, v)
	case "propertyNames":
		n.propertyNames, err = c.sub(file, at, v)
	case "items":
		n.items, err = c.sub(file, at, v)
	case "uniqueItems":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("not a boolean")
		}
		n.uniqueItems = b
	case "minItems":
		n.minItems, err = count(v)
	case "minLength":
		n.minLength, err = count(v)
	case "maxLength":
		n.maxLength, err = count(v)
	case "pattern":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("not a string")
		}
		n.pattern, err = regexp.Compile(s)
	case "format":
		s, ok := v.(string)
		if !ok || s != "date-time" {
			return fmt.Errorf("format %v is not supported (only date-time)", v)
		}
		n.format = s
	case "minimum":
		n.minimum, err = number(v)
	case "maximum":
		n.maximum, err = number(v)
	case "exclusiveMinimum":
		n.exclusiveMinimum, err = number(v)
	}
	return err
}

func count(v any) (*int, error) {
	r, err := number(v)
	if err != nil {
		return nil, err
	}
	if r.Sign() < 0 || !r.IsInt() || !r.Num().IsInt64() {
		return nil, fmt.Errorf("%v is not a non-negative integer", v)
	}
	i := int(r.Num().Int64())
	return &i, nil
}

func number(v any) (*big.Rat, error) {
	num, ok := v.(json.Number)
	if !ok {
		return nil, fmt.Errorf("%v is not a number", v)
	}
	r, ok := exact(num)
	if !ok {
		return nil, fmt.Errorf("%v is not a number", v)
	}
	return r, nil
}

// exact is a JSON number's exact value (1e400 is a valid JSON integer that
// no float64 holds).
func exact(num json.Number) (*big.Rat, bool) {
	return new(big.Rat).SetString(string(num))
}

// lookup follows a JSON pointer into a parsed document.
func lookup(doc any, ptr string) (any, error) {
	if ptr == "" {
		return doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("fragment %q is not a JSON pointer", ptr)
	}
	v := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q: %q is not in an object", ptr, tok)
		}
		if v, ok = m[tok]; !ok {
			return nil, fmt.Errorf("%q: no %q", ptr, tok)
		}
	}
	return v, nil
}

// decodeJSON parses one JSON value, keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("invalid character after top-level value")
	}
	return v, nil
}

// violation is one failed check.
type violation struct {
	path   []string // instance location
	reason string
	// unevaluated marks "property not allowed" from unevaluatedProperties,
	// which is often the fallout of another failure and reported last.
	unevaluated bool
}

// validate checks v against n and appends every violation. It returns the
// property names n evaluated in an object (for unevaluatedProperties).
func (n *node) validate(v any, at []string, out *[]violation) (evaluated map[string]bool) {
	if n.never {
		*out = append(*out, violation{path: at, reason: "not allowed"})
		return nil
	}
	evaluated = map[string]bool{}
	if n.ref != nil {
		for k := range n.ref.validate(v, at, out) {
			evaluated[k] = true
		}
	}
	for _, s := range n.allOf {
		for k := range s.validate(v, at, out) {
			evaluated[k] = true
		}
	}
	fail := func(format string, args ...any) {
		*out = append(*out, violation{path: at, reason: fmt.Sprintf(format, args...)})
	}
	if len(n.types) > 0 && !slices.ContainsFunc(n.types, func(t string) bool { return isType(v, t) }) {
		fail("got %s, want %s", typeOf(v), strings.Join(n.types, " or "))
		return evaluated // the other checks would only repeat it
	}
	if n.hasConst && !equal(v, n.constVal) {
		fail("value must be %s", show(n.constVal))
	}
	if n.enum != nil && !slices.ContainsFunc(n.enum, func(e any) bool { return equal(v, e) }) {
		shown := make([]string, len(n.enum))
		for i, e := range n.enum {
			shown[i] = show(e)
		}
		fail("value must be one of %s", strings.Join(shown, ", "))
	}
	switch x := v.(type) {
	case string:
		l := utf8.RuneCountInString(x)
		if n.minLength != nil && l < *n.minLength {
			fail("minLength: got %d, want %d", l, *n.minLength)
		}
		if n.maxLength != nil && l > *n.maxLength {
			fail("maxLength: got %d, want %d", l, *n.maxLength)
		}
		if n.pattern != nil && !n.pattern.MatchString(x) {
			fail("%s does not match pattern %s", show(x), show(n.pattern.String()))
		}
		if n.format == "date-time" && !isDateTime(x) {
			fail("%s is not valid date-time", show(x))
		}
	case json.Number:
		r, _ := exact(x)
		if n.minimum != nil && r.Cmp(n.minimum) < 0 {
			fail("minimum: got %s, want %s", x, n.minimum.RatString())
		}
		if n.maximum != nil && r.Cmp(n.maximum) > 0 {
			fail("maximum: got %s, want %s", x, n.maximum.RatString())
		}
		if n.exclusiveMinimum != nil && r.Cmp(n.exclusiveMinimum) <= 0 {
			fail("exclusiveMinimum: got %s, want > %s", x, n.exclusiveMinimum.RatString())
		}
	case []any:
		if n.minItems != nil && len(x) < *n.minItems {
			fail("minItems: got %d, want %d", len(x), *n.minItems)
		}
		if n.uniqueItems {
			for i := range x {
				for j := i + 1; j < len(x); j++ {
					if equal(x[i], x[j]) {
						fail("items at %d and %d are equal", i, j)
					}
				}
			}
		}
		if n.items != nil {
			for i, e := range x {
				n.items.validate(e, append(slices.Clip(at), strconv.Itoa(i)), out)
			}
		}
	case map[string]any:
		names := slices.Sorted(maps.Keys(x))
		for _, r := range n.required {
			if _, ok := x[r]; !ok {
				fail("missing property '%s'", r)
			}
		}
		var extra []string
		for _, k := range names {
			sub := append(slices.Clip(at), k)
			if n.propertyNames != nil {
				n.propertyNames.validate(k, at, out)
			}
			if p, ok := n.properties[k]; ok {
				p.validate(x[k], sub, out)
				evaluated[k] = true
				continue
			}
			if n.additional != nil {
				evaluated[k] = true
				if n.additional.never {
					extra = append(extra, k)
					continue
				}
				n.additional.validate(x[k], sub, out)
			}
		}
		if len(extra) > 0 {
			fail("additional properties %s not allowed", quoteAll(extra))
		}
		if n.unevaluated != nil {
			for _, k := range names {
				if evaluated[k] {
					continue
				}
				if n.unevaluated.never {
					*out = append(*out, violation{path: append(slices.Clip(at), k), reason: "property not allowed", unevaluated: true})
					continue
				}
				n.unevaluated.validate(x[k], append(slices.Clip(at), k), out)
				evaluated[k] = true
			}
		}
	}
	return evaluated
}

func isType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		num, ok := v.(json.Number)
		if !ok {
			return false
		}
		r, ok := exact(num)
		return ok && r.IsInt()
	}
	return false
}

func typeOf(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case json.Number:
		if isType(x, "integer") {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// equal is JSON equality: numbers by value, objects by members.
func equal(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		rx, ok1 := exact(x)
		ry, ok2 := exact(y)
		return ok1 && ok2 && rx.Cmp(ry) == 0
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, equal)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, s := range names {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// isDateTime is RFC 3339 date-time: full date, 'T', full time with seconds,
// optional fraction, and 'Z' or a numeric offset.
var dateTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`)

func isDateTime(s string) bool {
	if !dateTimeRE.MatchString(s) {
		return false
	}
	// time.Parse checks the ranges (month 1-12, day of month, hour 0-23...);
	// a leap second (:60) is valid in RFC 3339 but not to time.Parse.
	norm := strings.ToUpper(s)
	if norm[17:19] == "60" {
		norm = norm[:17] + "59" + norm[19:]
	}
	_, err := time.Parse(time.RFC3339Nano, norm)
	return err == nil
}

// pick chooses the violation to report: a real one before the "property not
// allowed" fallout of unevaluatedProperties, then the one deepest in the
// instance, then the first found.
func pick(vs []violation) violation {
	best := vs[0]
	for _, v := range vs[1:] {
		if best.unevaluated != v.unevaluated {
			if best.unevaluated {
				best = v
			}
			continue
		}
		if len(v.path) > len(best.path) {
			best = v
		}
	}
	return best
}
