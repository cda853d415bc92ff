/* jsonesc.h: the one-character escapes of a JSON string (RFC 8259: \" \\ \/ \b \f \n \r \t),
 * one switch for the service thread's strict scan (message.c) and the Lua thread's decoder
 * (lua/lbind_json.c). \u is each caller's own (a code point, surrogate pairs). Header-only,
 * pure, any thread. */
#ifndef GN_JSONESC_H
#define GN_JSONESC_H

/* Returns the byte that the escape \e stands for, or -1 when e is 'u' or no JSON escape. */
static inline int gn_json_escape(unsigned char e) {
  switch (e) {
  case '"': return '"';
  case '\\': return '\\';
  case '/': return '/';
  case 'b': return '\b';
  case 'f': return '\f';
  case 'n': return '\n';
  case 'r': return '\r';
  case 't': return '\t';
  default: return -1;
  }
}

#endif
