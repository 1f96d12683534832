#!/usr/bin/env node
/*
 * An lwm2m-node-lib LwM2M *server*, driven by tests/interop over stdin/stdout.
 *
 * Usage: node nodelib_server.js [port]      (0 or absent: any free port; LWM2M_PORT works too)
 * Env:   NODELIB_WRITE_FORMAT   Content-Format of Write/Execute payloads (library default:
 *                               "lightweightm2m/text", the pre-1.0 code 1541)
 *        NODELIB_ACCEPT_FORMAT  Accept option of Read/Observe (library default: none)
 *
 * Prints one JSON object per line on stdout:
 *   {"event":"listening","port":N}
 *   {"event":"registration","endpoint":"..","lifetime":"..","version":"..","binding":"..",
 *    "payload":"</1/0>,..","id":N,"address":"..","port":N}
 *   {"event":"update","endpoint":"..","payload":".."}
 *   {"event":"deregistration","endpoint":".."}
 *   {"event":"result","id":<cmd id>,"ok":true,"value":".."} / {"..","ok":false,"error":"..",
 *    "code":"4.04"}
 *   {"event":"notification","endpoint":"..","path":"/3/0/9","value":".."}
 *
 * Commands: one JSON object per line on stdin, each with an "id" echoed in its result:
 *   {"id":1,"op":"read","ep":"dev","path":"/3/0/0"}
 *   {"id":2,"op":"write","ep":"dev","path":"/5/0/1","value":"coap://.."}
 *   {"id":3,"op":"execute","ep":"dev","path":"/5/0/2","args":"0='x'"}
 *   {"id":4,"op":"observe","ep":"dev","path":"/3/0/9"}   (result carries the first value)
 *   {"id":5,"op":"discover","ep":"dev","path":"/3/0"}
 *   {"id":6,"op":"list"}
 *   {"op":"quit"}
 *
 * lwm2m-node-lib logs through logops to stdout; the logger is sent to stderr so stdout
 * carries nothing but the JSON lines.
 */
'use strict';

var logger = require('logops');
logger.setStream(process.stderr);
logger.setLevel(process.env.NODELIB_LOG_LEVEL || 'FATAL');

var server = require('lwm2m-node-lib').server;
var readline = require('readline');

var requestedPort = Number(process.argv[2] || process.env.LWM2M_PORT || 0);

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

var config = {
    port: requestedPort,
    lifetimeCheckInterval: 1000,
    udpWindow: 100,
    defaultType: 'Device',
    logLevel: process.env.NODELIB_LOG_LEVEL || 'FATAL',
    ipProtocol: 'udp4',
    serverProtocol: 'udp4',
    deviceRegistry: {type: 'memory'},
    // The formats lwm2m-node-lib's own config.js ships for its server (pre-1.0 codes).
    formats: [
        {name: 'lightweightm2m/text', value: 1541},
        {name: 'application-vnd-oma-lwm2m/tlv', value: 1542},
        {name: 'application-vnd-oma-lwm2m/json', value: 1543},
        {name: 'application-vnd-oma-lwm2m/opaque', value: 1544}
    ],
    writeFormat: process.env.NODELIB_WRITE_FORMAT || 'lightweightm2m/text'
};
if (process.env.NODELIB_ACCEPT_FORMAT) {
    config.defaultAcceptFormat = process.env.NODELIB_ACCEPT_FORMAT;
}
// The library reads LWM2M_PORT itself; our port argument wins.
delete process.env.LWM2M_PORT;

function splitPath(path) {
    var ids = String(path || '').split('/').filter(function (s) {
        return s.length > 0;
    });
    return {type: ids[0], instance: ids[1], resource: ids[2]};
}

function errorResult(id, error) {
    emit({event: 'result', id: id, ok: false,
        error: String(error && (error.message || error.name) || error), code: error && error.code || null});
}

function withDevice(cmd, fn) {
    server.getDevice(cmd.ep, function (error, device) {
        if (error) {
            errorResult(cmd.id, error);
        } else {
            fn(device);
        }
    });
}

function done(cmd) {
    return function (error, value) {
        if (error) {
            errorResult(cmd.id, error);
        } else {
            emit({event: 'result', id: cmd.id, ok: true, value: value === undefined ? null : value});
        }
    };
}

function handleCommand(line) {
    var cmd;
    if (!line.trim()) {
        return;
    }
    try {
        cmd = JSON.parse(line);
    } catch (e) {
        emit({event: 'error', where: 'command', message: 'not JSON: ' + line});
        return;
    }
    var p = splitPath(cmd.path);
    switch (cmd.op) {
    case 'read':
        withDevice(cmd, function (device) {
            server.read(device.id, p.type, p.instance, p.resource, done(cmd));
        });
        break;
    case 'write':
        withDevice(cmd, function (device) {
            server.write(device.id, p.type, p.instance, p.resource, String(cmd.value), done(cmd));
        });
        break;
    case 'execute':
        withDevice(cmd, function (device) {
            server.execute(device.id, p.type, p.instance, p.resource, cmd.args || '', done(cmd));
        });
        break;
    case 'observe':
        withDevice(cmd, function (device) {
            server.observe(device.id, p.type, p.instance, p.resource,
                function (value, objectType, objectId, resourceId) {
                    emit({event: 'notification', endpoint: cmd.ep,
                        path: '/' + objectType + '/' + objectId + '/' + resourceId, value: value});
                }, done(cmd));
        });
        break;
    case 'discover':
        withDevice(cmd, function (device) {
            if (p.resource !== undefined) {
                server.discover(device.id, p.type, p.instance, p.resource, done(cmd));
            } else if (p.instance !== undefined) {
                server.discover(device.id, p.type, p.instance, done(cmd));
            } else {
                server.discover(device.id, p.type, done(cmd));
            }
        });
        break;
    case 'list':
        server.listDevices(function (error, devices) {
            done(cmd)(error, (devices || []).map(function (d) {
                return {id: d.id, name: d.name, lifetime: d.lifetime, address: d.address, port: d.port};
            }));
        });
        break;
    case 'quit':
        process.exit(0);
        break;
    default:
        errorResult(cmd.id, 'unknown op: ' + cmd.op);
    }
}

server.start(config, function (error, serverInfo) {
    if (error) {
        emit({event: 'error', where: 'start', message: String(error.message || error)});
        process.exit(1);
    }
    // Device operations are sent through the server's own socket as a CoAP proxy
    // (Proxy-Uri), addressed to config.port: it must be the port actually bound.
    var bound = serverInfo.server._sock.address().port;
    config.port = bound;

    server.setHandler(serverInfo, 'registration', function (endpoint, lifetime, version, binding, payload, cb) {
        server.getDevice(endpoint, function (err, device) {
            emit({event: 'registration', endpoint: endpoint, lifetime: lifetime, version: version,
                binding: binding, payload: payload, id: device ? device.id : null,
                address: device ? device.address : null, port: device ? device.port : null});
            cb();
        });
    });
    server.setHandler(serverInfo, 'updateRegistration', function (device, payload, cb) {
        emit({event: 'update', endpoint: device.name, lifetime: device.lifetime, payload: payload});
        cb();
    });
    function onDeregistration(device, cb) {
        emit({event: 'deregistration', endpoint: device.name});
        cb();
    }
    server.setHandler(serverInfo, 'unregistration', onDeregistration);
    // setHandler restarts the lifetime sweep with an undefined period (a 1 ms timer);
    // restart it with the configured one.
    server.getRegistry().checkLifetime(config.lifetimeCheckInterval, onDeregistration);
    emit({event: 'listening', port: bound});
});

readline.createInterface({input: process.stdin}).on('line', handleCommand).on('close', function () {
    process.exit(0);
});
