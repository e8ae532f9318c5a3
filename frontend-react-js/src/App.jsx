import { Route, Routes, useParams } from 'react-router-dom';
import Layout from './components/Layout.jsx';
import ActivityPage from './pages/ActivityPage.jsx';
import ConfirmPage from './pages/ConfirmPage.jsx';
import ConversationPage from './pages/ConversationPage.jsx';
import HomePage from './pages/HomePage.jsx';
import MessageGroupsPage from './pages/MessageGroupsPage.jsx';
import NotFoundPage from './pages/NotFoundPage.jsx';
import NotificationsPage from './pages/NotificationsPage.jsx';
import SearchPage from './pages/SearchPage.jsx';
import SignInPage from './pages/SignInPage.jsx';
import SignOutPage from './pages/SignOutPage.jsx';
import SignUpPage from './pages/SignUpPage.jsx';
import UserPage from './pages/UserPage.jsx';

// React Router matches whole segments only, so "/@handle" is ":at" checked for its "@" here.
function AtHandle({ render }) {
  const { at, uuid } = useParams();
  if (!at?.startsWith('@') || at.length < 2) return <NotFoundPage />;
  return render(at.slice(1), uuid);
}

export default function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<HomePage />} />
        <Route path="notifications" element={<NotificationsPage />} />
        <Route path="search" element={<SearchPage />} />
        <Route path="signin" element={<SignInPage />} />
        <Route path="signup" element={<SignUpPage />} />
        <Route path="confirm" element={<ConfirmPage />} />
        <Route path="signout" element={<SignOutPage />} />
        <Route path="messages" element={<MessageGroupsPage />} />
        <Route
          path="messages/:at"
          element={<AtHandle render={(handle) => <ConversationPage key={handle} handle={handle} />} />}
        />
        <Route path=":at" element={<AtHandle render={(handle) => <UserPage key={handle} handle={handle} />} />} />
        <Route
          path=":at/status/:uuid"
          element={<AtHandle render={(_handle, uuid) => <ActivityPage key={uuid} uuid={uuid} />} />}
        />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
