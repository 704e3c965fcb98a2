#!/usr/bin/python3
"""Independent Modbus client checks against citygate-sim (pymodbus 3.0 from Debian, plus
raw sockets and raw serial frames), driven by tests/integration/25-sim-modbus.sh.

  sim_check.py values PORT PTY          held values, plausible ranges, exceptions, RTU
  sim_check.py timeline PORT            scripted exception and silence at their times
  sim_check.py many PORT HOSTS UNITS    every unit on every host answers, over one
                                        connection per device (HOSTS*UNITS connections)

Exit status 0 when every check passed; each failure is printed as "FAIL: ...".
"""
import socket
import select
import struct
import sys
import time

from pymodbus.client import ModbusSerialClient, ModbusTcpClient

failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


def f32(regs, order="ABCD"):
    b = struct.pack(">HH", *regs)  # wire bytes A B C D
    if order == "DCBA":
        b = b[::-1]
    elif order == "CDAB":
        b = b[2:] + b[:2]
    return struct.unpack(">f", b)[0]


def i16(r):
    return r - 65536 if r >= 32768 else r


def tcp_client(port):
    # pymodbus 3.0.0 fails to connect with a fractional timeout: use whole seconds.
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    if not c.connect():
        print("FAIL: cannot connect to 127.0.0.1:%d" % port)
        sys.exit(1)
    return c


def regs(r):
    return None if r.isError() else r.registers


def exc_code(r):
    return getattr(r, "exception_code", None)


def values(port, pty):
    c = tcp_client(port)
    # d1 is held with exact values by the scenario (at 0 s).
    deadline = time.time() + 3
    v = None
    while time.time() < deadline:
        v = regs(c.read_input_registers(0, 1, slave=1))
        if v == [2305]:
            break
        time.sleep(0.05)
    check(v == [2305], "d1 voltage_v held at 230.5 V (u16 x0.1 = 2305), got %s" % v)
    t = regs(c.read_holding_registers(10, 1, slave=1))
    check(t is not None and i16(t[0]) == -325, "d1 tilt_deg held at -3.25 (i16 x0.01), got %s" % t)
    co = c.read_coils(0, 1, slave=1)
    check(not co.isError() and co.bits[0] is True, "d1 relay_on coil set true")

    # d2 (kind water) walks freely: every field within its plausible band.
    for _ in range(3):
        inp = regs(c.read_input_registers(0, 5, slave=2))
        hold = regs(c.read_holding_registers(10, 3, slave=2))
        ch4 = regs(c.read_holding_registers(20, 2, slave=2))
        check(inp is not None and hold is not None and ch4 is not None, "d2 reads answered")
        if failures:
            break
        volt = inp[0] * 0.1
        power = f32(inp[1:3])
        energy = (inp[4] << 16 | inp[3]) * 0.01  # u32 CDAB: low word first
        tilt = i16(hold[0]) * 0.01
        dp = hold[2]
        pressure = i16(hold[1]) / 10 ** dp
        lel = f32(ch4, "DCBA")
        check(220 <= volt <= 230, "d2 voltage %.1f V in 220..230" % volt)
        check(power >= 0, "d2 power %.2f W >= 0" % power)
        check(energy > 0, "d2 energy %.2f kWh > 0" % energy)
        check(0 <= tilt <= 2, "d2 tilt %.2f deg in 0..2" % tilt)
        check(0 <= dp <= 3, "d2 decimal register %d in 0..3" % dp)
        check(0.25 <= pressure <= 0.35, "d2 water pressure %.3f MPa in 0.25..0.35" % pressure)
        check(0 <= lel <= 3, "d2 ch4 %.2f %%LEL in 0..3" % lel)
        time.sleep(1.1)
    fixed = regs(c.read_holding_registers(30, 1, slave=2))
    check(fixed == [1234], "profile sim hint value 1234, got %s" % fixed)

    r = c.read_holding_registers(10, 12, slave=2)
    check(exc_code(r) == 2, "read across a gap (13..19) answers exception 02, got %s" % r)
    r = c.read_input_registers(0, 126, slave=2)
    check(exc_code(r) == 3, "read of 126 registers answers exception 03, got %s" % r)
    r = c.read_holding_registers(10, 1, slave=99)
    check(exc_code(r) == 0x0B, "unknown unit answers exception 0B, got %s" % r)
    w = c.write_register(10, 150, slave=2)
    t = regs(c.read_holding_registers(10, 1, slave=2))
    check(not w.isError() and t == [150], "FC06 write of tilt is read back (%s)" % t)
    w = c.write_register(100, 1, slave=2)
    check(exc_code(w) == 2, "FC06 to an absent register answers exception 02")
    c.close()

    # RTU over the pty pair: d3 (kind gas) on unit 5.
    s = ModbusSerialClient(method="rtu", port=pty, baudrate=9600, timeout=1, retries=0)
    check(s.connect(), "RTU client opened %s" % pty)
    ch4 = regs(s.read_holding_registers(20, 2, slave=5))
    check(ch4 is not None and 0 <= f32(ch4, "DCBA") <= 5,
          "RTU d3 ch4 %s in 0..5 %%LEL (gas)" % (ch4 and round(f32(ch4, "DCBA"), 3)))
    inp = regs(s.read_input_registers(0, 1, slave=5))
    check(inp is not None and 2200 <= inp[0] <= 2300, "RTU d3 voltage raw %s in 2200..2300" % inp)
    r = s.read_holding_registers(40, 1, slave=5)
    check(exc_code(r) == 2, "RTU absent address answers exception 02, got %s" % r)
    t0 = time.time()
    r = s.read_holding_registers(20, 2, slave=6)
    check(r.isError() and exc_code(r) is None and time.time() - t0 >= 0.9,
          "RTU unknown unit stays silent (%s)" % r)
    s.close()

    # Raw frames: a good request is answered with a good CRC, a bad CRC gets silence.
    import serial  # pyserial, a pymodbus dependency

    def crc16(b):
        crc = 0xFFFF
        for x in b:
            crc ^= x
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        return struct.pack("<H", crc)

    port_ = serial.Serial(pty, 9600, timeout=0.5)
    req = bytes([5, 3, 0, 10, 0, 1])
    port_.write(req + crc16(req))
    ans = port_.read(7)
    check(len(ans) == 7 and ans[:3] == bytes([5, 3, 2]) and crc16(ans[:5]) == ans[5:],
          "raw RTU answer with a valid CRC: %s" % ans.hex())
    bad = bytearray(req + crc16(req))
    bad[-1] ^= 0xFF
    port_.write(bytes(bad))
    ans = port_.read(7)
    check(ans == b"", "bad-CRC request gets no answer (%s)" % ans.hex())
    time.sleep(0.1)
    port_.write(req + crc16(req))
    ans = port_.read(7)
    check(len(ans) == 7, "the line resynchronises after a bad frame")
    port_.close()


def timeline(port):
    """Scenario: d1 exception 04 at address 11 from 2 s; d2 silent 3 s..5 s; d2 dripped
    (10 ms per byte) from 6 s. t=0 is when this script starts (just after ready)."""
    c = tcp_client(port)
    t0 = time.time()
    first_exc = None
    silent_from = silent_to = None
    while time.time() - t0 < 6.0:
        now = time.time() - t0
        r = c.read_holding_registers(11, 1, slave=1)
        if first_exc is None and exc_code(r) == 4:
            first_exc = now
        r2 = c.read_holding_registers(11, 1, slave=2)
        if r2.isError() and exc_code(r2) is None:
            if silent_from is None:
                silent_from = now
            # pymodbus drops the connection after a timeout: reconnect.
            c.close()
            c = tcp_client(port)
        elif silent_from is not None and silent_to is None:
            silent_to = time.time() - t0
        time.sleep(0.05)
    check(first_exc is not None and 1.6 <= first_exc <= 2.6,
          "scripted exception 04 first seen at %s s (scripted 2 s)" % first_exc)
    check(silent_from is not None and 2.6 <= silent_from <= 3.6,
          "d2 went silent at %s s (scripted 3 s)" % silent_from)
    check(silent_to is not None and 4.6 <= silent_to <= 6.0,
          "d2 answered again at %s s (scripted 5 s)" % silent_to)
    while time.time() - t0 < 6.5:
        time.sleep(0.05)
    t = time.time()
    r = c.read_holding_registers(10, 3, slave=2)
    dt = time.time() - t
    # 15-byte answer at 10 ms per byte: about 140 ms.
    check(not r.isError() and 0.12 <= dt <= 0.6, "dripped answer took %.3f s (15 bytes x 10 ms)" % dt)
    c.close()


def many(port, hosts, units):
    """One TCP connection per device, all requests in flight at once."""
    conns = []
    for h in range(1, hosts + 1):
        for u in range(1, units + 1):
            s = socket.create_connection(("127.0.0.%d" % h, port), timeout=5)
            s.setblocking(False)
            conns.append((s, u))
    t0 = time.time()
    for i, (s, u) in enumerate(conns):
        s.send(struct.pack(">HHHBBHH", i & 0xFFFF, 0, 6, u, 3, 10, 3))
    pending = {s.fileno(): (s, u, i) for i, (s, u) in enumerate(conns)}
    bufs = {}
    good = 0
    deadline = time.time() + 20
    poller = select.poll()
    for s, _ in conns:
        poller.register(s, select.POLLIN)
    while pending and time.time() < deadline:
        for fd, _ in poller.poll(1000):
            s, u, i = pending[fd]
            bufs[fd] = bufs.get(fd, b"") + s.recv(512)
            b = bufs[fd]
            if len(b) >= 15:
                tid, proto, ln, unit, fc, bc = struct.unpack(">HHHBBB", b[:9])
                if tid == i & 0xFFFF and unit == u and fc == 3 and bc == 6:
                    good += 1
                poller.unregister(fd)
                del pending[fd]
    dt = time.time() - t0
    check(good == hosts * units,
          "%d of %d devices answered over %d concurrent connections in %.2f s"
          % (good, hosts * units, len(conns), dt))
    # And a sequential sweep over one connection per host (many unit ids per port).
    ok = 0
    t0 = time.time()
    for h in range(1, hosts + 1):
        c = ModbusTcpClient("127.0.0.%d" % h, port=port, timeout=1, retries=0)
        c.connect()
        for u in range(1, units + 1):
            r = c.read_input_registers(0, 5, slave=u)
            if not r.isError() and 2200 <= r.registers[0] <= 2300:
                ok += 1
        c.close()
    check(ok == hosts * units, "sequential sweep: %d of %d units answered plausibly in %.2f s"
          % (ok, hosts * units, time.time() - t0))
    for s, _ in conns:
        s.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "values":
        values(int(sys.argv[2]), sys.argv[3])
    elif mode == "timeline":
        timeline(int(sys.argv[2]))
    elif mode == "many":
        many(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
