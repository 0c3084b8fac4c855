package config

import (
	"errors"
	"fmt"
	"strconv"
)

// FieldError is one problem in a configuration, located by file, line and
// field path. Load, Parse and Validate join every FieldError they find with
// errors.Join; reach them with errors.As or by unwrapping.
type FieldError struct {
	File  string // "" for a config built in code
	Line  int    // 0 when unknown
	Field string // e.g. "config.host_groups[0].storage_size"
	Msg   string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	switch {
	case loc != "" && e.Field != "":
		return loc + ": " + e.Field + ": " + e.Msg
	case loc != "":
		return loc + ": " + e.Msg
	case e.Field != "":
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

// problems collects FieldErrors against one source.
type problems struct {
	src  *Source
	errs []error
}

// add records a problem with field, cited at the field's line (or its
// nearest ancestor's).
func (p *problems) add(field, format string, args ...any) {
	e := &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	if p.src != nil {
		e.File = p.src.File
		e.Line = p.src.Line(field)
	}
	p.errs = append(p.errs, e)
}

// addAt records a problem at an explicit line.
func (p *problems) addAt(line int, field, format string, args ...any) {
	e := &FieldError{Field: field, Line: line, Msg: fmt.Sprintf(format, args...)}
	if p.src != nil {
		e.File = p.src.File
	}
	p.errs = append(p.errs, e)
}

func (p *problems) err() error {
	return errors.Join(p.errs...)
}
