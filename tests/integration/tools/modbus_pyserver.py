#!/usr/bin/python3
"""An independent Modbus server (Debian's python3-pymodbus) for the integration tests.

    modbus_pyserver.py --spec FILE (--tcp PORT | --serial DEVICE) [--delay-ms N]

FILE is JSON: {"units": {"1": {"holding": {"0": 17254, ...}, "input": {...},
"coils": {"0": 1}, "discrete": {...}}, ...}}. Addresses are 0-based PDU addresses
(zero_mode); only the listed addresses exist, so a read that covers any other address is
answered with exception 02 ILLEGAL DATA ADDRESS. Unit ids not listed never answer
(ignore_missing_slaves), like a silent device behind a gateway.
"""
import argparse
import asyncio
import json
import logging
import sys

from pymodbus.datastore import (ModbusServerContext, ModbusSlaveContext,
                                ModbusSparseDataBlock)
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer


def block(d):
    vals = {int(k, 0): int(v) for k, v in (d or {}).items()}
    if not vals:
        vals = {65535: 0}  # pymodbus needs one value; 65535 is never read by the tests
    return ModbusSparseDataBlock(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--serial")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    slaves = {}
    for unit, tables in spec["units"].items():
        slaves[int(unit)] = ModbusSlaveContext(
            hr=block(tables.get("holding")), ir=block(tables.get("input")),
            co=block(tables.get("coils")), di=block(tables.get("discrete")),
            zero_mode=True)
    ctx = ModbusServerContext(slaves=slaves, single=False)
    if args.tcp:
        coro = StartAsyncTcpServer(context=ctx, address=("127.0.0.1", args.tcp),
                                   ignore_missing_slaves=True)
    elif args.serial:
        coro = StartAsyncSerialServer(context=ctx, framer=ModbusRtuFramer, port=args.serial,
                                      baudrate=9600, bytesize=8, parity="N", stopbits=1,
                                      ignore_missing_slaves=True)
    else:
        ap.error("--tcp or --serial")
    print("serving", flush=True)
    asyncio.run(coro)


if __name__ == "__main__":
    sys.exit(main())
