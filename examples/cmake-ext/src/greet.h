#ifndef GREET_H
#define GREET_H
#include <stddef.h>
/* writes "hello, NAME" into out (at most size bytes); returns the length it needed */
int greet_format(char *out, size_t size, const char *name);
#endif
