/*  conveyor.h: the whole public API of libconveyor. */
#ifndef CONVEYOR_H_INCLUDED
#define CONVEYOR_H_INCLUDED

#include <czmq.h>

#define CONVEYOR_VERSION_MAJOR 0
#define CONVEYOR_VERSION_MINOR 1
#define CONVEYOR_VERSION_PATCH 0
#define CONVEYOR_PROTOCOL 1

#include "cvr_types.h"
#include "cvr_security.h"
#include "cvr_server.h"
#include "cvr_client.h"
#include "cvr_registration.h"
#include "cvr_watch.h"
#include "cvr_balancer.h"
#include "cvr_member.h"

#endif
