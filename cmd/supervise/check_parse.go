package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// sumsParser reads the lines of sums files as sha512sum -c (GNU coreutils 9.1) reads them,
// the quirks included, so that a line it accepts we accept and one it rejects we reject:
//
//   - "HEX  NAME" and "HEX *NAME": 128 hex digits (either case), a space or tab, a space or
//     "*", then the name, every byte of it to the end of the line (spaces included);
//   - "SHA512 (NAME) = HEX" (--tag's form; "SHA512(NAME)=HEX" too): the name ends at the
//     line's last ")";
//   - "HEX NAME" with one space (BSD md5 -r's form), only where the first line that parsed
//     had this form: from then on it is the only form, for every sums file of the run;
//   - a leading backslash: the name is escaped, \\ \n \r and nothing else;
//   - blanks before the line's start, a "\r" before its "\n", lines starting with "#"
//     (comments) and empty lines: ignored.
type sumsParser struct {
	reversed int // -1 not known yet, 0 the standard form, 1 BSD md5 -r's form
}

func newSumsParser() *sumsParser { return &sumsParser{reversed: -1} }

const hexSum = 2 * 64 // a SHA-512 in hex

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// at is s[i], or 0 past its end: C's view of a line, which ends with a NUL.
func at(s []byte, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// cstr is s up to its first NUL: what C code sees of a name that holds one.
func cstr(s []byte) []byte {
	if k := bytes.IndexByte(s, 0); k >= 0 {
		return s[:k]
	}
	return s
}

// parse splits a line, its "\n" and "\r" removed, into a name and the sum it should have;
// ok is false for a line sha512sum calls improperly formatted.
func (p *sumsParser) parse(s []byte) (name string, want []byte, ok bool) {
	i := 0
	for isBlank(at(s, i)) {
		i++
	}
	escaped := at(s, i) == '\\'
	if escaped {
		i++
	}
	if bytes.HasPrefix(s[i:], []byte("SHA512")) {
		i += len("SHA512")
		if at(s, i) == ' ' {
			i++
		}
		if at(s, i) != '(' {
			return "", nil, false
		}
		return tagged(s[i+1:], escaped)
	}
	back := 0
	if at(s, i) == '\\' {
		back = 1
	}
	if len(s)-i < hexSum+2+back {
		return "", nil, false
	}
	digits := s[i : i+hexSum]
	i += hexSum
	if !isBlank(at(s, i)) {
		return "", nil, false
	}
	i++
	if want = decodeHex(digits); want == nil {
		return "", nil, false
	}
	if len(s)-i == 1 || (at(s, i) != ' ' && at(s, i) != '*') {
		if p.reversed == 0 {
			return "", nil, false // no mixing of the forms: a name starting with " " is not a trick
		}
		p.reversed = 1
	} else if p.reversed != 1 {
		p.reversed = 0
		i++ // the text/binary mark, which means nothing here
	}
	return finishName(s[i:], escaped, want)
}

// tagged parses what follows "SHA512 (": NAME) = HEX.
func tagged(s []byte, escaped bool) (string, []byte, bool) {
	if len(s) == 0 {
		return "", nil, false
	}
	i := len(s) - 1
	for i > 0 && s[i] != ')' {
		i--
	}
	if s[i] != ')' {
		return "", nil, false
	}
	name := s[:i]
	i++
	for isBlank(at(s, i)) {
		i++
	}
	if at(s, i) != '=' {
		return "", nil, false
	}
	i++
	for isBlank(at(s, i)) {
		i++
	}
	digits := s[i:]
	if k := bytes.IndexByte(digits, 0); k >= 0 {
		digits = digits[:k]
	}
	if len(digits) != hexSum {
		return "", nil, false
	}
	want := decodeHex(digits)
	if want == nil {
		return "", nil, false
	}
	return finishName(name, escaped, want)
}

func finishName(name []byte, escaped bool, want []byte) (string, []byte, bool) {
	if escaped {
		var ok bool
		if name, ok = unescapeName(name); !ok {
			return "", nil, false
		}
	}
	return string(cstr(name)), want, true
}

func decodeHex(digits []byte) []byte {
	want := make([]byte, len(digits)/2)
	if _, err := hex.Decode(want, digits); err != nil {
		return nil
	}
	return want
}

// unescapeName undoes sha512sum's escaping: \\, \n and \r; any other backslash, a trailing
// one, or a NUL makes the line improperly formatted.
func unescapeName(s []byte) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			return nil, false
		case '\\':
			i++
			switch at(s, i) {
			case '\\':
				out = append(out, '\\')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			default:
				return nil, false
			}
		default:
			out = append(out, c)
		}
	}
	return out, true
}

// checkedName is a name as sha512sum -c prints it before ": OK": as it is, unless it holds a
// newline; then with a leading backslash, and \, newline and carriage return escaped.
func checkedName(name string) string {
	if !strings.Contains(name, "\n") {
		return name
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
	return `\` + r.Replace(name)
}

// quoteName quotes a name for a message as coreutils' quotef does (gnulib's
// shell-escape quoting, with ":" quoted too): as it is when a shell would read it back
// unchanged; else in single quotes, with ' as '\” and what is not printable as $'\n' or
// $'\351'; or in double quotes when that needs no escapes and there is a ' in it. In a UTF-8
// locale (LC_ALL, LC_CTYPE or LANG), printable UTF-8 is left as it is; in others, every byte
// above 0x7f is escaped.
func quoteName(s string, utf8Locale bool) string {
	if s == "" {
		return "''"
	}
	quote, single, compat := false, false, true
	for i := 0; i < len(s); {
		c := s[i]
		size, ok, safe, printable := 1, false, false, true
		switch {
		case c >= 0x80:
			r, n := utf8.DecodeRuneInString(s[i:])
			size = n
			printable = utf8Locale && r != utf8.RuneError && unicode.IsGraphic(r)
			ok, safe = printable, printable
		case c < 0x20 || c == 0x7f:
			printable = false
		case c == '\'':
			single, ok = true, true
		case c == ' ' || c == ':':
			ok = true // quoted, but fine in double quotes
		case c == '#' || c == '~': // special at the start only
			safe, ok = i != 0, i == 0
		case c == '{' || c == '}': // special alone only
			safe, ok = len(s) != 1, len(s) == 1
		case strings.IndexByte("%+,-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ]_abcdefghijklmnopqrstuvwxyz@", c) >= 0:
			ok, safe = true, true
		}
		if !printable {
			ok = false
		}
		quote = quote || !safe
		compat = compat && ok
		i += size
	}
	if !quote {
		return s
	}
	if single && compat {
		return `"` + s + `"`
	}
	return singleQuoted(s, utf8Locale)
}

// singleQuoted is s in shell single quotes, with $'...' for what is not printable.
func singleQuoted(s string, utf8Locale bool) string {
	var b strings.Builder
	b.WriteByte('\'')
	inEsc := false // within a $'...' run
	for i := 0; i < len(s); {
		c := s[i]
		size := 1
		printable := c >= 0x20 && c < 0x7f
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if utf8Locale && r != utf8.RuneError && unicode.IsGraphic(r) {
				size, printable = n, true
			}
		}
		if !printable {
			if !inEsc {
				b.WriteString(`'$'`)
				inEsc = true
			}
			b.WriteString(cEscape(c))
			i++
			continue
		}
		if inEsc {
			b.WriteString(`''`)
			inEsc = false
		}
		if c == '\'' {
			b.WriteString(`'\''`)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('\'')
	return b.String()
}

// cEscape is a byte as C writes it in a string: \n, \t, ... or \ooo.
func cEscape(c byte) string {
	if k := strings.IndexByte("\a\b\f\n\r\t\v", c); k >= 0 {
		return `\` + string("abfnrtv"[k])
	}
	return `\` + string([]byte{'0' + c>>6, '0' + c>>3&7, '0' + c&7})
}

// utf8Locale is whether the locale (LC_ALL, else LC_CTYPE, else LANG) names UTF-8.
func utf8Locale() bool {
	for _, v := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if l := os.Getenv(v); l != "" {
			l = strings.ToLower(l)
			return strings.Contains(l, "utf-8") || strings.Contains(l, "utf8")
		}
	}
	return false
}
