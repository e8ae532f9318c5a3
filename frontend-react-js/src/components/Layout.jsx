import { NavLink, Outlet } from 'react-router-dom';
import { canAct, useSession } from '../session.jsx';

const LINKS = [
  { to: '/', label: 'Home', end: true },
  { to: '/notifications', label: 'Notifications', needsUser: true },
  { to: '/search', label: 'Search' },
  { to: '/messages', label: 'Messages', needsUser: true },
];

function SessionLinks({ session }) {
  if (session.status === 'signedIn') {
    return (
      <nav className="session" aria-label="Account">
        <span className="handle">@{session.user.username}</span>
        <NavLink to="/signout">Sign out</NavLink>
      </nav>
    );
  }
  if (session.status === 'signedOut') {
    return (
      <nav className="session" aria-label="Account">
        <NavLink to="/signin">Sign in</NavLink>
        <NavLink to="/signup">Sign up</NavLink>
      </nav>
    );
  }
  return null;
}

/** The page frame: brand, navigation, who is signed in, and the current page. */
export default function Layout() {
  const session = useSession();
  const links = LINKS.filter((link) => !link.needsUser || canAct(session));
  return (
    <div className="app">
      <header className="sidebar">
        <NavLink to="/" className="brand" aria-label="Cruddur home">
          Cruddur
        </NavLink>
        <nav aria-label="Main">
          {links.map((link) => (
            <NavLink key={link.to} to={link.to} end={link.end}>
              {link.label}
            </NavLink>
          ))}
        </nav>
        <SessionLinks session={session} />
      </header>
      <main className="content">
        <Outlet />
      </main>
    </div>
  );
}
