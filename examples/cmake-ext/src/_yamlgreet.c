/* _yamlgreet: greet(name) through libgreet; keys(text) parses a YAML mapping with libyaml. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <yaml.h>
#include "greet.h"

static PyObject *greet(PyObject *self, PyObject *args) {
    const char *name;
    char buf[256];
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    greet_format(buf, sizeof buf, name);
    return PyUnicode_FromFormat("%s (libyaml %s)", buf, yaml_get_version_string());
}

static PyObject *keys(PyObject *self, PyObject *args) {
    const char *text;
    Py_ssize_t len;
    yaml_parser_t parser;
    yaml_event_t event;
    int depth = 0, expect_key = 0, done = 0;
    if (!PyArg_ParseTuple(args, "s#", &text, &len)) return NULL;
    PyObject *out = PyList_New(0);
    if (!out || !yaml_parser_initialize(&parser)) return out;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, (size_t)len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &event)) {
            PyErr_Format(PyExc_ValueError, "YAML: %s", parser.problem ? parser.problem : "error");
            Py_CLEAR(out);
            break;
        }
        switch (event.type) {
        case YAML_MAPPING_START_EVENT: depth++; expect_key = (depth == 1); break;
        case YAML_MAPPING_END_EVENT: depth--; break;
        case YAML_SCALAR_EVENT:
            if (depth == 1 && expect_key) {
                PyObject *key = PyUnicode_FromStringAndSize((const char *)event.data.scalar.value,
                                                            (Py_ssize_t)event.data.scalar.length);
                if (key) { PyList_Append(out, key); Py_DECREF(key); }
            }
            if (depth == 1) expect_key = !expect_key;
            break;
        case YAML_STREAM_END_EVENT: done = 1; break;
        default: break;
        }
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return out;
}

static PyMethodDef methods[] = {
    {"greet", greet, METH_VARARGS, "hello, NAME (through libgreet), and libyaml's version"},
    {"keys", keys, METH_VARARGS, "the top-level keys of a YAML mapping (parsed by libyaml)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_yamlgreet", NULL, -1, methods};

PyMODINIT_FUNC PyInit__yamlgreet(void) { return PyModule_Create(&module); }
