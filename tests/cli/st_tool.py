#!/usr/bin/env python3
"""Small safetensors helper for the command-line tests (no numpy).

  st_tool.py bad KIND OUT      write a malformed file of the given kind
  st_tool.py variant SRC OUT drop=NAME|add=NAME   copy a model, changing tensors
  st_tool.py maxdiff A B NAME  print max |A[NAME] - B[NAME]| (F32 tensors)
  st_tool.py set SRC OUT NAME INDEX VALUE   copy a model with NAME[INDEX] = VALUE
                               (F32; VALUE as Python's float(): nan, inf, -inf, 1.5)
"""
import json, struct, sys


def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, b[8 + n:]


def write(path, header, data):
    hb = json.dumps(header).encode()
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)


def f32(path, name):
    h, d = read(path)
    e = h[name]
    s, t = e['data_offsets']
    assert e['dtype'] == 'F32', e['dtype']
    return struct.unpack('<%df' % ((t - s) // 4), d[s:t])


def bad(kind, out):
    a = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    if kind == 'truncated':
        write(out, {"a": a}, b'\0' * 5)
    elif kind == 'header_past_end':
        open(out, 'wb').write(struct.pack('<Q', 1000) + b'{"a": 1}')
    elif kind == 'bad_json':
        hb = b'{"a": {"dtype": "F32",'
        open(out, 'wb').write(struct.pack('<Q', len(hb)) + hb)
    elif kind == 'overlap':
        write(out, {"a": a, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b'\0' * 8)
    elif kind == 'out_of_range':
        write(out, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b'\0' * 8)
    elif kind == 'gap':
        write(out, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b'\0' * 12)
    elif kind == 'shape_mismatch':
        write(out, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b'\0' * 8)
    elif kind == 'unknown_dtype':
        write(out, {"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 8]}}, b'\0' * 8)
    else:
        raise SystemExit('unknown kind ' + kind)


def variant(src, out, change):
    h, d = read(src)
    meta = h.pop('__metadata__', None)
    op, name = change.split('=', 1)
    parts = []
    for k in sorted(h, key=lambda k: h[k]['data_offsets'][0]):
        if op == 'drop' and k == name:
            continue
        s, t = h[k]['data_offsets']
        parts.append((k, h[k], d[s:t]))
    if op == 'add':
        parts.append((name, {"dtype": "F32", "shape": [4]}, b'\0' * 16))
    header, data = {}, b''
    if meta:
        header['__metadata__'] = meta
    for k, e, raw in parts:
        header[k] = {"dtype": e['dtype'], "shape": e['shape'],
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    write(out, header, data)


def set_value(src, out, name, index, value):
    h, d = read(src)
    e = h[name]
    assert e['dtype'] == 'F32', e['dtype']
    s, t = e['data_offsets']
    assert 0 <= index < (t - s) // 4, index
    d = bytearray(d)
    struct.pack_into('<f', d, s + 4 * index, value)
    write(out, h, bytes(d))


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'bad':
        bad(sys.argv[2], sys.argv[3])
    elif cmd == 'variant':
        variant(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == 'set':
        set_value(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    elif cmd == 'maxdiff':
        x, y = f32(sys.argv[2], sys.argv[4]), f32(sys.argv[3], sys.argv[4])
        assert len(x) == len(y), (len(x), len(y))
        print('%.3g' % max(abs(p - q) for p, q in zip(x, y)))
